//! `/v1/inbox`: the calling user's in-app notifications in the current tenant.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use pysaas_brokers::{InAppNotification, InboxFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Any, Authorized};
use crate::error::ApiError;
use crate::AppState;

/// Largest page.
const INBOX_PAGE_MAX: i64 = 100;

/// One notification.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NotificationView {
    id: Uuid,
    /// `billing`, `security`, `alerts` or `product`.
    category: String,
    title: String,
    body: String,
    /// Where it links to.
    link: Option<String>,
    created_at: DateTime<Utc>,
    /// When the user read it.
    read_at: Option<DateTime<Utc>>,
}

impl From<InAppNotification> for NotificationView {
    fn from(n: InAppNotification) -> Self {
        NotificationView {
            id: n.id,
            category: n.category,
            title: n.title,
            body: n.body,
            link: n.link,
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

/// A page of the inbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct InboxPage {
    notifications: Vec<NotificationView>,
    /// Unread in all (not only on this page).
    unread: i64,
    /// `before` for the next page; none on the last.
    next_cursor: Option<Uuid>,
}

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboxQuery {
    /// Only unread ones.
    unread: Option<bool>,
    /// Ids older than this one (the previous page's `next_cursor`).
    before: Option<Uuid>,
    /// 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

use super::user_of;

/// The caller's notifications, newest first, with the count of unread ones.
#[utoipa::path(get, path = "/v1/inbox", operation_id = "listInbox", tag = "notifications", params(InboxQuery),
    responses((status = 200, body = InboxPage),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of range", content_type = "application/problem+json")))]
pub(crate) async fn list_inbox(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Json<InboxPage>, ApiError> {
    let user_id = user_of(&principal)?;
    let Query(q) = query?;
    let limit = super::page_limit(q.limit, 50, INBOX_PAGE_MAX)?;
    let tenant = principal.tenant_id;
    let page = state
        .store()
        .list_notifications(&InboxFilter {
            tenant_id: tenant.clone(),
            user_id,
            unread_only: q.unread.unwrap_or(false),
            before: q.before,
            limit,
        })
        .await?;
    let unread = state.store().unread_notifications(&tenant, user_id).await?;
    let next_cursor = (i64::try_from(page.len()).unwrap_or(i64::MAX) == limit)
        .then(|| page.last().map(|n| n.id))
        .flatten();
    Ok(Json(InboxPage {
        notifications: page.into_iter().map(Into::into).collect(),
        unread,
        next_cursor,
    }))
}

/// Mark one notification read (again is harmless).
#[utoipa::path(post, path = "/v1/inbox/{id}/read", operation_id = "markInboxRead", tag = "notifications",
    params(("id" = String, Path, description = "Notification id")),
    responses((status = 200, body = NotificationView),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 404, description = "No such notification of the caller's", content_type = "application/problem+json")))]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    Path(id): Path<String>,
) -> Result<Json<NotificationView>, ApiError> {
    let user_id = user_of(&principal)?;
    let id = super::parse_id("notification", &id)?;
    let now = state.store().now().await?;
    let n = state
        .store()
        .mark_notification_read(&principal.tenant_id, user_id, id, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no notification `{id}`")))?;
    Ok(Json(n.into()))
}

/// How many were marked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MarkedRead {
    marked: u64,
}

/// Mark every notification of the caller's in this tenant read.
#[utoipa::path(post, path = "/v1/inbox/read-all", operation_id = "markInboxAllRead", tag = "notifications",
    responses((status = 200, body = MarkedRead),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json")))]
pub(crate) async fn mark_all_read(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
) -> Result<Json<MarkedRead>, ApiError> {
    let user_id = user_of(&principal)?;
    let now = state.store().now().await?;
    let marked = state
        .store()
        .mark_all_notifications_read(&principal.tenant_id, user_id, now)
        .await?;
    Ok(Json(MarkedRead { marked }))
}
