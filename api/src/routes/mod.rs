//! Route handlers, one module per resource.

pub(crate) mod auth;
pub(crate) mod billing;
pub(crate) mod events;
pub(crate) mod jobs;
pub(crate) mod notifications;
pub(crate) mod schedules;
pub(crate) mod stats;
pub(crate) mod system;
pub(crate) mod webhooks;
