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

use uuid::Uuid;

use crate::error::ApiError;

/// A path id of a `what` (`job`, `invoice`): a malformed one names nothing, so 404.
pub(crate) fn parse_id(what: &str, id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no {what} `{id}`")))
}

/// Checks that the body's `field` is a plain email address (422 naming it).
pub(crate) fn email_field(field: &str, value: &str) -> Result<(), ApiError> {
    if pysaas_jobs::kinds::notification::valid_email_address(value) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            format!("`{field}` is not an email address like ada@example.com"),
            field,
            "an email address like ada@example.com",
        ))
    }
}
