//! The profile pool's handlers (queue `profiles`): a user's data export and erasure. See
//! `docs/domains.md`, "Profiles".

use std::sync::Arc;

use async_trait::async_trait;
use pysaas_brokers::{JobFilter, JobStore, ProfileItem, ProfileStore, StoreError};
use pysaas_jobs::kinds::notification::Email;
use pysaas_jobs::kinds::profile::{Delete, Export};
use pysaas_jobs::{HandlerError, JobKind};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{Handlers, JobContext, JobHandler};

/// The export document's format name.
pub const EXPORT_FORMAT: &str = "pysaas.profile-export/1";
/// At most this many emails per tenant are listed in an export (newest first).
const EXPORT_EMAILS_MAX: i64 = 1000;

/// Registers `profile.export` and `profile.delete`.
pub fn register(handlers: &mut Handlers) {
    handlers
        .register::<Export, _>(ExportHandler)
        .register::<Delete, _>(DeleteHandler);
}

/// A store error: an outage is retried, anything else too (these jobs must finish), with what
/// was being done.
fn retry(what: &str) -> impl FnOnce(StoreError) -> HandlerError + '_ {
    move |e| HandlerError::retry(format!("{what}: {e}"))
}

/// Runs `profile.export`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportHandler;

/// Runs `profile.delete`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteHandler;

async fn item(
    profiles: &Arc<dyn ProfileStore>,
    user_id: Uuid,
    item: ProfileItem,
) -> Result<Value, HandlerError> {
    let v = profiles
        .get_item(user_id, item)
        .await
        .map_err(retry("reading the profile store"))?;
    Ok(v.map_or(
        Value::Null,
        |v| json!({ "data": v.data, "version": v.version, "updated_at": v.updated_at }),
    ))
}

/// Everything the store and the profile store hold about a user, as one document.
async fn gather(
    store: &Arc<dyn JobStore>,
    profiles: &Arc<dyn ProfileStore>,
    user_id: Uuid,
) -> Result<Option<Value>, HandlerError> {
    let Some(user) = store
        .user_by_id(user_id)
        .await
        .map_err(retry("reading the account"))?
    else {
        return Ok(None);
    };
    let memberships = store
        .memberships_of(user_id)
        .await
        .map_err(retry("reading the memberships"))?;
    let mut emails = Vec::new();
    let mut subscriptions = Vec::new();
    let mut api_keys = Vec::new();
    for m in &memberships {
        let tenant = m.tenant_id.as_str();
        let sent = store
            .list(&JobFilter {
                tenant_id: tenant.to_owned(),
                state: None,
                kind: Some(Email::KIND.to_owned()),
                queue: None,
                limit: EXPORT_EMAILS_MAX,
                before: None,
                payload: Some(Map::from_iter([("to".to_owned(), json!(user.email))])),
            })
            .await
            .map_err(retry("reading the emails sent"))?;
        emails.extend(sent.into_iter().map(|j| {
            json!({
                "tenant_id": j.tenant_id, "job_id": j.id, "template": j.payload.get("template"),
                "state": j.state.as_str(), "created_at": j.created_at, "finished_at": j.finished_at,
            })
        }));
        let invoices = store
            .list_invoices(tenant, 1000)
            .await
            .map_err(retry("reading the invoices"))?;
        for s in store
            .list_subscriptions(tenant)
            .await
            .map_err(retry("reading the subscriptions"))?
            .into_iter()
            .filter(|s| s.billing_email.as_deref() == Some(user.email.as_str()))
        {
            let of_it: Vec<Value> = invoices
                .iter()
                .filter(|i| i.subscription_id == s.id)
                .map(|i| {
                    json!({
                        "id": i.id, "number": i.number, "status": i.status.as_str(),
                        "currency": i.currency.to_string(), "total_minor": i.total_minor,
                        "period_start": i.period_start, "period_end": i.period_end,
                        "paid_at": i.paid_at,
                    })
                })
                .collect();
            subscriptions.push(json!({
                "tenant_id": s.tenant_id, "id": s.id, "plan_id": s.plan_id,
                "status": s.status.as_str(), "billing_email": s.billing_email,
                "created_at": s.created_at, "cancelled_at": s.cancelled_at, "invoices": of_it,
            }));
        }
        let keys = store
            .api_keys(tenant)
            .await
            .map_err(retry("reading the API keys"))?;
        api_keys.extend(
            keys.into_iter()
                .filter(|k| k.created_by == Some(user_id))
                .map(|k| {
                    json!({
                        "tenant_id": k.tenant_id, "id": k.id, "name": k.name, "prefix": k.prefix,
                        "scopes": k.scopes, "created_at": k.created_at, "revoked_at": k.revoked_at,
                    })
                }),
        );
    }
    let inbox = store
        .notifications_of_user(user_id)
        .await
        .map_err(retry("reading the in-app notifications"))?;
    let now = store.now().await.map_err(retry("reading the clock"))?;
    Ok(Some(json!({
        "format": EXPORT_FORMAT,
        "generated_at": now,
        "user": { "id": user.id, "email": user.email, "created_at": user.created_at },
        "memberships": memberships.iter().map(|m| json!({
            "tenant_id": m.tenant_id, "role": m.role, "since": m.created_at,
        })).collect::<Vec<_>>(),
        "profile": item(profiles, user_id, ProfileItem::Profile).await?,
        "preferences": item(profiles, user_id, ProfileItem::Preferences).await?,
        "in_app_notifications": inbox.iter().map(|n| json!({
            "tenant_id": n.tenant_id, "id": n.id, "category": n.category, "title": n.title,
            "body": n.body, "link": n.link, "created_at": n.created_at, "read_at": n.read_at,
        })).collect::<Vec<_>>(),
        "emails": emails,
        "subscriptions": subscriptions,
        "api_keys": api_keys,
    })))
}

#[async_trait]
impl JobHandler<Export> for ExportHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        payload: Export,
    ) -> Result<Option<Value>, HandlerError> {
        let store = ctx.store()?;
        let export = store
            .get_export(payload.export_id)
            .await
            .map_err(retry("reading the export"))?
            .ok_or_else(|| {
                HandlerError::cancel(format!(
                    "export {} is gone (its user was erased)",
                    payload.export_id
                ))
            })?;
        if export.tenant_id != ctx.tenant_id {
            return Err(HandlerError::fail("the export belongs to another tenant"));
        }
        let profiles = ctx.profiles()?;
        let Some(document) = gather(store, &profiles, export.user_id).await? else {
            return Err(HandlerError::cancel("the user no longer exists"));
        };
        let now = store.now().await.map_err(retry("reading the clock"))?;
        store
            .finish_export(export.id, &document, now)
            .await
            .map_err(retry("storing the export"))?;
        let size = serde_json::to_vec(&document).map_or(0, |d| d.len());
        Ok(Some(json!({ "export_id": export.id, "bytes": size })))
    }
}

#[async_trait]
impl JobHandler<Delete> for DeleteHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        payload: Delete,
    ) -> Result<Option<Value>, HandlerError> {
        let store = ctx.store()?;
        let erasure = store
            .get_erasure(payload.erasure_id)
            .await
            .map_err(retry("reading the erasure"))?
            .filter(|e| e.tenant_id == ctx.tenant_id)
            .ok_or_else(|| HandlerError::fail(format!("no erasure {}", payload.erasure_id)))?;
        if erasure.status == "done" {
            return Ok(Some(json!({ "erasure_id": erasure.id, "already": "done" })));
        }
        let user_id = erasure
            .user_id
            .ok_or_else(|| HandlerError::fail("a pending erasure without its user"))?;
        // The store first, in one transaction that also keeps its counts on the erasure's row:
        // once the account is gone no new profile write is accepted, and the profile items
        // (found by the user id the row keeps until the end) go next. A retry after a crash
        // finds the account gone and carries on from there.
        let account = store
            .user_by_id(user_id)
            .await
            .map_err(retry("reading the account"))?;
        if let Some(account) = account {
            let tenants: Vec<String> = store
                .memberships_of(user_id)
                .await
                .map_err(retry("reading the memberships"))?
                .into_iter()
                .map(|m| m.tenant_id)
                .collect();
            store
                .erase_user_rows(erasure.id, user_id, &account.email, &tenants)
                .await
                .map_err(retry("erasing the account's rows"))?;
        }
        let profiles = ctx.profiles()?;
        let items = profiles
            .erase_items(user_id)
            .await
            .map_err(retry("erasing profile items"))?;
        // What the store step recorded (this run's, or an earlier one's), and the items.
        let recorded = store
            .get_erasure(erasure.id)
            .await
            .map_err(retry("reading the erasure"))?
            .and_then(|e| e.counts);
        let mut counts = Map::new();
        if let Some(Value::Object(store_counts)) = recorded {
            for (table, n) in store_counts {
                counts.insert(format!("store.{table}"), n);
            }
        }
        let key = format!("{}.profile_items", profiles.profile_backend());
        let earlier = counts.get(&key).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(key, json!(earlier + items));
        let now = store.now().await.map_err(retry("reading the clock"))?;
        let counts = Value::Object(counts);
        store
            .finish_erasure(erasure.id, &counts, now)
            .await
            .map_err(retry("recording the erasure"))?;
        Ok(Some(json!({ "erasure_id": erasure.id, "removed": counts })))
    }
}
