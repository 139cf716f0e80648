//! Built-in handlers. Domain pools (billing, notification, profile) add theirs beside these.

mod notification;
mod system;

pub use notification::WebhookHandler;
pub use system::{FailHandler, NoopHandler, SleepHandler};

use pysaas_jobs::kinds;

use crate::Handlers;

pub(crate) fn register_builtin(handlers: &mut Handlers) {
    handlers
        .register::<kinds::system::Noop, _>(NoopHandler)
        .register::<kinds::system::Sleep, _>(SleepHandler)
        .register::<kinds::system::Fail, _>(FailHandler)
        .register::<kinds::notification::Webhook, _>(WebhookHandler::default());
}
