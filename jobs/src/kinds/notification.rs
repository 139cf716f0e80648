//! Notification kinds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::preferences::Category;
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

    /// What its messages are about: receipts, failed payments and cancellations are billing
    /// (transactional: sent whatever the recipient's preferences say); a welcome is product
    /// news; a notice is an operational alert.
    pub fn category(self) -> Category {
        match self {
            EmailTemplate::Receipt
            | EmailTemplate::PaymentFailed
            | EmailTemplate::SubscriptionCancelled => Category::Billing,
            EmailTemplate::Welcome => Category::Product,
            EmailTemplate::Notice => Category::Alerts,
        }
    }
}

/// Sends an email rendered from a template over SMTP, from the tenant's sender. A temporary
/// refusal (4xx) or an unreachable server is retried; a permanent one (5xx) is final.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// Recipient address (`ada@example.com`). The schema's pattern is the plain subset a form
    /// or generated client can build safely; any address without a display name is accepted.
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_%+-]{1,64}@([A-Za-z0-9]{1,63}\.){1,4}[A-Za-z]{2,24}$"),
        length(max = 254)
    )]
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

/// Largest `data` of a webhook event, as JSON.
pub const WEBHOOK_EVENT_MAX_BYTES: usize = 64 * 1024;

/// Whether `s` is an event type: dot-separated lower-case words (`invoice.paid`), 3 to 100
/// characters.
pub fn valid_event_type(s: &str) -> bool {
    let words: Vec<_> = s.split('.').collect();
    (3..=100).contains(&s.len())
        && words.len() >= 2
        && words.iter().all(|w| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// Fans an event out to the tenant's webhook endpoints that take its type: one
/// `notification.webhook_delivery` (and its delivery-log row) per endpoint, in one
/// transaction.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEvent {
    /// Dot-separated lower-case words (`invoice.paid`).
    #[schemars(
        regex(pattern = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"),
        length(min = 3, max = 100)
    )]
    pub event_type: String,
    /// The event's body (at most 64 KiB as JSON).
    #[serde(default)]
    pub data: serde_json::Map<String, Value>,
}

impl JobKind for WebhookEvent {
    const KIND: &'static str = "notification.webhook_event";
    const QUEUE: &'static str = "notifications";

    fn check(&self) -> Result<(), (String, String)> {
        if !valid_event_type(&self.event_type) {
            return Err((
                "event_type".into(),
                "must be dot-separated lower-case words, like invoice.paid".into(),
            ));
        }
        let size = serde_json::to_vec(&self.data).map_or(usize::MAX, |v| v.len());
        if size > WEBHOOK_EVENT_MAX_BYTES {
            return Err((
                "data".into(),
                format!("is {size} bytes as JSON; at most {WEBHOOK_EVENT_MAX_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// Delivers one event to one endpoint: a POST signed with the endpoint's secret, recorded in the
/// delivery log (status, response code, latency, attempt). Created by `notification.webhook_event`
/// and by a replay, not submitted by hand.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelivery {
    /// The delivery-log row.
    pub delivery_id: uuid::Uuid,
}

impl JobKind for WebhookDelivery {
    const KIND: &'static str = "notification.webhook_delivery";
    const INTERNAL: bool = true;
    const QUEUE: &'static str = "notifications";

    fn timeout() -> Duration {
        Duration::from_secs(30)
    }

    fn retry_policy() -> crate::RetryPolicy {
        // About a day of retries, as Stripe's webhooks.
        crate::RetryPolicy {
            max_attempts: 16,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3 * 3600),
            ..crate::RetryPolicy::default()
        }
    }
}

/// Longest title of an in-app notification, in characters.
pub const IN_APP_TITLE_MAX: usize = 200;
/// Longest body of an in-app notification, in characters.
pub const IN_APP_BODY_MAX: usize = 2000;

/// Puts a notification in users' dashboard inbox: one user of the tenant, or (no `user_id`)
/// its owners and admins. Users who opted out of the category in-app are skipped, unless it is
/// transactional (billing, security). Runs once per recipient however often it is retried.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InApp {
    /// The recipient, a member of the job's tenant; none: the tenant's owners and admins.
    #[serde(default)]
    pub user_id: Option<uuid::Uuid>,
    /// What it is about.
    pub category: Category,
    /// One line: 1 to 200 characters, no control characters, not starting with a space.
    #[schemars(
        length(min = 1, max = 200),
        regex(pattern = r"^[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")
    )]
    pub title: String,
    /// Text (at most 2000 characters).
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub body: String,
    /// Where the dashboard links it to: a path (`/jobs/?id=…`) or an https URL; no control
    /// characters.
    #[serde(default)]
    #[schemars(
        length(max = 2000),
        regex(
            pattern = r"^(/([^/\x00-\x1f\x7f][^\x00-\x1f\x7f]*)?|https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\x00-\x1f\x7f]*)?)$"
        )
    )]
    pub link: Option<String>,
}

/// Whether `link` is a path or an https URL as [`InApp::link`] describes (the schema's pattern).
pub fn valid_link(link: &str) -> bool {
    let printable = |s: &str| !s.chars().any(|c| c.is_ascii_control());
    if let Some(rest) = link.strip_prefix('/') {
        return !rest.starts_with('/') && printable(rest);
    }
    let Some(rest) = link.strip_prefix("https://") else {
        return false;
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && (!authority.contains(':')
            || ((1..=5).contains(&port.len()) && port.chars().all(|c| c.is_ascii_digit())))
        && printable(path)
}

impl JobKind for InApp {
    const KIND: &'static str = "notification.in_app";
    const QUEUE: &'static str = "notifications";

    fn check(&self) -> Result<(), (String, String)> {
        let title = self.title.chars().count();
        let starts_well = self
            .title
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace());
        if !starts_well
            || title > IN_APP_TITLE_MAX
            || self.title.chars().any(|c| c.is_ascii_control())
        {
            return Err((
                "title".into(),
                format!(
                    "must be 1 to {IN_APP_TITLE_MAX} characters without control characters, \
                     not starting with a space (is {title})"
                ),
            ));
        }
        let body = self.body.chars().count();
        if body > IN_APP_BODY_MAX {
            return Err((
                "body".into(),
                format!("must be at most {IN_APP_BODY_MAX} characters (is {body})"),
            ));
        }
        if let Some(link) = &self.link {
            if !valid_link(link) || link.chars().count() > 2000 {
                return Err((
                    "link".into(),
                    "must be a path starting with / or an https URL".into(),
                ));
            }
        }
        Ok(())
    }
}
