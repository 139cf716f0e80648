//! [`NotificationStore`] once for both backends.

use async_trait::async_trait;

use super::{args, Columns, SqlBackend, Stmt};
use crate::store::notifications::{EmailSender, NotificationStore};
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
