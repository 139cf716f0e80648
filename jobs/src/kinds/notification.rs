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
