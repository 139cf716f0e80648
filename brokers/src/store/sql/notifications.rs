//! [`NotificationStore`] and [`InboxStore`] once for both backends.

use async_trait::async_trait;

use super::{args, Columns, SqlBackend, Stmt};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::notifications::{
    EmailSender, InAppNotification, InboxFilter, InboxStore, NotificationStore,
};
use crate::Result;

const GET_SENDER: Stmt<'static> = Stmt::read("SELECT * FROM email_senders WHERE tenant_id = $1");
const SET_SENDER: Stmt<'static> = Stmt::write(
    "INSERT INTO email_senders (tenant_id, from_address, from_name, reply_to, updated_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (tenant_id) DO UPDATE SET from_address = excluded.from_address, \
       from_name = excluded.from_name, reply_to = excluded.reply_to, \
       updated_at = excluded.updated_at",
);
const DELETE_SENDER: Stmt<'static> = Stmt::write("DELETE FROM email_senders WHERE tenant_id = $1");

#[async_trait]
impl<S: SqlBackend> NotificationStore for S {
    async fn email_sender(&self, tenant_id: &str) -> Result<Option<EmailSender>> {
        let Some(row) = self.fetch_optional(GET_SENDER, &args![tenant_id]).await? else {
            return Ok(None);
        };
        Ok(Some(EmailSender {
            from_address: row.text("from_address")?,
            from_name: row.opt_text("from_name")?,
            reply_to: row.opt_text("reply_to")?,
            updated_at: row.time("updated_at")?,
        }))
    }

    async fn set_email_sender(&self, tenant_id: &str, sender: Option<&EmailSender>) -> Result<()> {
        match sender {
            Some(s) => {
                self.execute(
                    SET_SENDER,
                    &args![
                        tenant_id,
                        s.from_address.as_str(),
                        s.from_name.as_deref(),
                        s.reply_to.as_deref(),
                        s.updated_at,
                    ],
                )
                .await?
            }
            None => self.execute(DELETE_SENDER, &args![tenant_id]).await?,
        };
        Ok(())
    }
}

const ADD_NOTIFICATION: Stmt<'static> = Stmt::write(
    "INSERT INTO inbox_notifications \
       (id, tenant_id, user_id, source, category, title, body, link, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source, user_id) DO NOTHING",
);
const LIST_NOTIFICATIONS: Stmt<'static> = Stmt::read(
    "SELECT * FROM inbox_notifications WHERE tenant_id = $1 AND user_id = $2 \
       AND ($3 = FALSE OR read_at IS NULL) AND ($4 IS NULL OR id < $4) \
     ORDER BY id DESC LIMIT $5",
);
const UNREAD: Stmt<'static> = Stmt::read(
    "SELECT COUNT(*) AS n FROM inbox_notifications \
     WHERE tenant_id = $1 AND user_id = $2 AND read_at IS NULL",
);
const MARK_READ: Stmt<'static> = Stmt::write(
    "UPDATE inbox_notifications SET read_at = COALESCE(read_at, $4) \
     WHERE tenant_id = $1 AND user_id = $2 AND id = $3 RETURNING *",
);
const MARK_ALL_READ: Stmt<'static> = Stmt::write(
    "UPDATE inbox_notifications SET read_at = $3 \
     WHERE tenant_id = $1 AND user_id = $2 AND read_at IS NULL",
);
const OF_USER: Stmt<'static> =
    Stmt::read("SELECT * FROM inbox_notifications WHERE user_id = $1 ORDER BY id");

fn notification<R: Columns>(row: &R) -> crate::Result<InAppNotification> {
    Ok(InAppNotification {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        user_id: row.uuid("user_id")?,
        source: row.text("source")?,
        category: row.text("category")?,
        title: row.text("title")?,
        body: row.text("body")?,
        link: row.opt_text("link")?,
        created_at: row.time("created_at")?,
        read_at: row.opt_time("read_at")?,
    })
}

#[async_trait]
impl<S: SqlBackend> InboxStore for S {
    async fn add_notification(&self, n: &InAppNotification) -> Result<bool> {
        let added = self
            .execute(
                ADD_NOTIFICATION,
                &args![
                    n.id,
                    n.tenant_id.as_str(),
                    n.user_id,
                    n.source.as_str(),
                    n.category.as_str(),
                    n.title.as_str(),
                    n.body.as_str(),
                    n.link.as_deref(),
                    n.created_at,
                ],
            )
            .await?;
        Ok(added > 0)
    }

    async fn list_notifications(&self, f: &InboxFilter) -> Result<Vec<InAppNotification>> {
        let rows = self
            .fetch_all(
                LIST_NOTIFICATIONS,
                &args![
                    f.tenant_id.as_str(),
                    f.user_id,
                    f.unread_only,
                    f.before,
                    f.limit.clamp(1, crate::store::LIST_LIMIT_MAX),
                ],
            )
            .await?;
        rows.iter().map(notification).collect()
    }

    async fn unread_notifications(&self, tenant_id: &str, user_id: Uuid) -> Result<i64> {
        let row = self
            .fetch_optional(UNREAD, &args![tenant_id, user_id])
            .await?;
        row.map_or(Ok(0), |r| r.big("n"))
    }

    async fn mark_notification_read(
        &self,
        tenant_id: &str,
        user_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<InAppNotification>> {
        let row = self
            .fetch_optional(MARK_READ, &args![tenant_id, user_id, id, now])
            .await?;
        row.as_ref().map(notification).transpose()
    }

    async fn mark_all_notifications_read(
        &self,
        tenant_id: &str,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.execute(MARK_ALL_READ, &args![tenant_id, user_id, now])
            .await
    }

    async fn notifications_of_user(&self, user_id: Uuid) -> Result<Vec<InAppNotification>> {
        let rows = self.fetch_all(OF_USER, &args![user_id]).await?;
        rows.iter().map(notification).collect()
    }
}
