//! `notification.in_app`: a notification in users' dashboard inbox.

use async_trait::async_trait;
use pysaas_brokers::InAppNotification;
use pysaas_jobs::kinds::notification::InApp;
use pysaas_jobs::preferences::Channel;
use pysaas_jobs::HandlerError;
use serde_json::{json, Value};
use uuid::Uuid;

use super::preferences::allowed;
use crate::{JobContext, JobHandler};

/// Runs `notification.in_app`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InAppHandler;

/// The roles an unaddressed notification goes to.
const ADMIN_ROLES: [&str; 2] = ["owner", "admin"];

#[async_trait]
impl JobHandler<InApp> for InAppHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        payload: InApp,
    ) -> Result<Option<Value>, HandlerError> {
        let store = ctx.store()?;
        let members = store
            .members(&ctx.tenant_id)
            .await
            .map_err(|e| HandlerError::retry(format!("reading the tenant's members: {e}")))?;
        let recipients: Vec<Uuid> = match payload.user_id {
            Some(user) => {
                if !members.iter().any(|m| m.user_id == user) {
                    return Err(HandlerError::fail(format!(
                        "user {user} is not a member of tenant {}",
                        ctx.tenant_id
                    )));
                }
                vec![user]
            }
            None => members
                .iter()
                .filter(|m| ADMIN_ROLES.contains(&m.role.as_str()))
                .map(|m| m.user_id)
                .collect(),
        };
        let now = store
            .now()
            .await
            .map_err(|e| HandlerError::retry(format!("reading the store's clock: {e}")))?;
        let (mut delivered, mut opted_out) = (0, 0);
        for user_id in recipients {
            if !allowed(ctx, user_id, Channel::InApp, payload.category).await? {
                opted_out += 1;
                continue;
            }
            // One row per job and recipient: a retry after a crash adds nothing twice.
            let added = store
                .add_notification(&InAppNotification {
                    id: Uuid::now_v7(),
                    tenant_id: ctx.tenant_id.clone(),
                    user_id,
                    source: ctx.id.to_string(),
                    category: payload.category.as_str().to_owned(),
                    title: payload.title.clone(),
                    body: payload.body.clone(),
                    link: payload.link.clone(),
                    created_at: now,
                    read_at: None,
                })
                .await
                .map_err(|e| HandlerError::retry(format!("storing the notification: {e}")))?;
            if added {
                delivered += 1;
            }
        }
        Ok(Some(
            json!({ "delivered": delivered, "opted_out": opted_out }),
        ))
    }
}
