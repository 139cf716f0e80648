//! The notification pool's handlers (queue `notifications`): email over SMTP from templates,
//! and webhook endpoints (signed deliveries with a log). (`notification.webhook`, a POST to a
//! URL of the job's, is in [`crate::handlers`].) See `docs/domains.md`, "Notifications".

mod email;
mod webhooks;

pub use email::{EmailConfig, EmailHandler, DEFAULT_EMAIL_FROM, DEFAULT_SMTP_URL};
pub use webhooks::{
    sign, WebhookConfig, WebhookDeliveryHandler, WebhookEventHandler, SIGNATURE_HEADER,
};
