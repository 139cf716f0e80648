//! Built-in handlers. Domain pools (billing, notification, profile) add theirs beside these.

pub mod egress;
mod notification;
mod system;

pub use notification::WebhookHandler;
pub use system::{FailHandler, NoopHandler, SleepHandler};

use pysaas_jobs::kinds;

use crate::Handlers;

/// Settings of the built-in handlers.
#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    /// Let webhooks reach loopback, private and link-local addresses (local development and
    /// tests; never on a shared deployment: tenants could reach internal services).
    pub webhook_allow_private: bool,
    /// Billing's provider and dunning.
    pub billing: crate::billing::BillingConfig,
    /// Email's SMTP server and default sender.
    pub email: crate::notifications::EmailConfig,
    /// When webhook endpoints are disabled.
    pub webhook_disable_after: i32,
}

impl Default for BuiltinConfig {
    /// Public webhooks only; billing through the local payment simulator on its default port.
    fn default() -> Self {
        BuiltinConfig {
            webhook_allow_private: false,
            billing: crate::billing::BillingConfig::local_default(),
            email: crate::notifications::EmailConfig::default(),
            webhook_disable_after: crate::notifications::WebhookConfig::default().disable_after,
        }
    }
}

pub(crate) fn register_builtin(handlers: &mut Handlers, config: BuiltinConfig) {
    handlers
        .register::<kinds::system::Noop, _>(NoopHandler)
        .register::<kinds::system::Sleep, _>(SleepHandler)
        .register::<kinds::system::Fail, _>(FailHandler)
        .register::<kinds::notification::Webhook, _>(WebhookHandler::with_policy(
            config.webhook_allow_private,
        ));
    crate::billing::register(handlers, config.billing);
    crate::profiles::register(handlers);
    let webhooks = crate::notifications::WebhookConfig {
        allow_private: config.webhook_allow_private,
        disable_after: config.webhook_disable_after,
    };
    handlers
        .register::<kinds::notification::InApp, _>(crate::notifications::InAppHandler)
        .register::<kinds::notification::WebhookEvent, _>(crate::notifications::WebhookEventHandler)
        .register::<kinds::notification::WebhookDelivery, _>(
            crate::notifications::WebhookDeliveryHandler::new(webhooks),
        );
    match crate::notifications::EmailHandler::new(&config.email) {
        Ok(email) => {
            handlers.register::<kinds::notification::Email, _>(email);
        }
        // The config is validated before this; a handler that cannot be built leaves the kind
        // out (submissions are refused as an unknown kind) rather than sending from nowhere.
        Err(err) => {
            tracing::error!(error = %err, "email settings are invalid: notification.email is not registered")
        }
    }
}
