//! Route handlers, one module per resource.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod billing;
pub(crate) mod events;
pub(crate) mod inbox;
pub(crate) mod jobs;
pub(crate) mod notifications;
pub(crate) mod profiles;
pub(crate) mod schedules;
pub(crate) mod stats;
pub(crate) mod system;
pub(crate) mod webhooks;

use axum::http::StatusCode;
use pysaas_jobs::Job;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// The calling user: profiles and inboxes belong to users, not to API keys (403).
pub(crate) fn user_of(principal: &Principal) -> Result<Uuid, ApiError> {
    principal.user_id().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this belongs to a user: call with a user's session, not an API key",
        )
    })
}

/// Records an audit fact of a change already made outside one store transaction (a profile in
/// DynamoDB, a bulk action over many jobs). The change stands whether or not its fact could be
/// recorded: a failure is logged, not answered.
pub(crate) async fn record_after(
    state: &AppState,
    tenant_id: &str,
    event_type: &str,
    subject: &str,
    event: &impl serde::Serialize,
) {
    let recorded = match serde_json::to_value(event) {
        Ok(data) => {
            state
                .store()
                .record_fact(tenant_id, event_type, subject, &data)
                .await
        }
        Err(e) => Err(pysaas_brokers::StoreError::Corrupt(e.to_string())),
    };
    if let Err(error) = recorded {
        tracing::error!(%error, event_type, subject, "an audit fact was not recorded");
    }
}

/// Publishes the jobs a domain transaction created through the broker (the store dispatcher
/// was woken by the commit; the relay covers a failed publish).
pub(crate) async fn dispatch_created(state: &AppState, jobs: &[Job]) {
    let ready: Vec<_> = jobs
        .iter()
        .filter(|j| j.state == pysaas_jobs::JobState::Queued)
        .cloned()
        .collect();
    if ready.is_empty() {
        return;
    }
    if let Err(err) = state.dispatcher().dispatch(&ready).await {
        tracing::warn!(error = %err, jobs = ready.len(), "dispatch after a commit failed");
    }
}

/// A page size: `limit` or `default`, which must lie in 1..=`max` (422 naming `limit`).
pub(crate) fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid_field(
            format!("`limit` must be between 1 and {max}"),
            "limit",
            format!("1 to {max}"),
        ))
    }
}

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
