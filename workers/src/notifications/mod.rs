//! The notification pool's handlers (queue `notifications`): email over SMTP from templates,
//! in-app notifications, and webhook endpoints (signed deliveries with a log). (`notification.webhook`, a POST to a
//! URL of the job's, is in [`crate::handlers`].) See `docs/domains.md`, "Notifications".

mod email;
mod in_app;
mod preferences;
mod webhooks;

pub use email::{EmailConfig, EmailHandler, DEFAULT_EMAIL_FROM, DEFAULT_SMTP_URL};
pub use in_app::InAppHandler;
pub use preferences::{allowed, preferences_of};
pub use webhooks::{
    sign, WebhookConfig, WebhookDeliveryHandler, WebhookEventHandler, SIGNATURE_HEADER,
};
