//! The notification pool's handlers (queue `notifications`): email over SMTP from templates.
//! (`notification.webhook` is in [`crate::handlers`].) See `docs/domains.md`, "Notifications".

mod email;

pub use email::{EmailConfig, EmailHandler, DEFAULT_EMAIL_FROM, DEFAULT_SMTP_URL};
