//! Reading a user's notification preferences, for every sender.

use pysaas_brokers::ProfileItem;
use pysaas_jobs::preferences::{Category, Channel, Preferences};
use pysaas_jobs::HandlerError;
use uuid::Uuid;

use crate::JobContext;

/// The user's preferences (none stored: the defaults, which opt out of nothing). An unreadable
/// profile store is a retry: a message is never sent against an opt-out it could not read.
pub async fn preferences_of(ctx: &JobContext, user_id: Uuid) -> Result<Preferences, HandlerError> {
    let item = ctx
        .profiles()?
        .get_item(user_id, ProfileItem::Preferences)
        .await
        .map_err(|e| HandlerError::retry(format!("reading the recipient's preferences: {e}")))?;
    match item {
        None => Ok(Preferences::default()),
        Some(v) => serde_json::from_value(v.data).map_err(|e| {
            HandlerError::fail(format!(
                "the recipient's stored preferences are unreadable: {e}"
            ))
        }),
    }
}

/// Whether `user_id` takes messages of `category` over `channel` (transactional ones always).
pub async fn allowed(
    ctx: &JobContext,
    user_id: Uuid,
    channel: Channel,
    category: Category,
) -> Result<bool, HandlerError> {
    if category.transactional() {
        return Ok(true);
    }
    Ok(preferences_of(ctx, user_id)
        .await?
        .allows(channel, category))
}
