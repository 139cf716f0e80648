//! [`ProfileStore`] (the store as a profile backend) and [`PrivacyStore`] once for both
//! backends.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, NewJob};
use uuid::Uuid;

use pysaas_jobs::events::{ProfileEvent, PROFILE_ERASED, PROFILE_EXPORTED};

use super::events::record_event;
use super::{args, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::profiles::{
    Erasure, PrivacyStore, ProfileExport, ProfileItem, ProfileStore, Versioned,
};
use crate::Result;

const GET_ITEM: Stmt<'static> =
    Stmt::read("SELECT * FROM profile_items WHERE user_id = $1 AND item = $2");
// Conditional writes: the first only while there is no item, the others only while the stored
// version is still the one expected.
const CREATE_ITEM: Stmt<'static> = Stmt::write(
    "INSERT INTO profile_items (user_id, item, version, data, updated_at) \
     VALUES ($1, $2, 1, $3, $4) ON CONFLICT (user_id, item) DO NOTHING RETURNING version",
);
const UPDATE_ITEM: Stmt<'static> = Stmt::write(
    "UPDATE profile_items SET version = version + 1, data = $3, updated_at = $4 \
     WHERE user_id = $1 AND item = $2 AND version = $5 RETURNING version",
);
const ERASE_ITEMS: Stmt<'static> = Stmt::write("DELETE FROM profile_items WHERE user_id = $1");

const INSERT_EXPORT: Stmt<'static> = Stmt::write(
    "INSERT INTO profile_exports (id, tenant_id, user_id, status, created_at) \
     VALUES ($1, $2, $3, 'pending', $4)",
);
const GET_EXPORT: Stmt<'static> = Stmt::read("SELECT * FROM profile_exports WHERE id = $1");
const FINISH_EXPORT: Stmt<'static> = Stmt::write(
    "UPDATE profile_exports SET status = 'ready', document = $2, completed_at = $3 WHERE id = $1",
);
/// A request's tenant and whether it is still pending, read on the writing transaction and
/// locked with the backend's `FOR UPDATE` (two runs of one job: the second waits, then finds it
/// done and records no second fact).
const EXPORT_STATE: &str = "SELECT tenant_id, status FROM profile_exports WHERE id = $1";
const ERASURE_STATE: &str = "SELECT tenant_id, status FROM erasures WHERE id = $1";
const INSERT_ERASURE: Stmt<'static> = Stmt::write(
    "INSERT INTO erasures (id, tenant_id, user_id, status, requested_at) \
     VALUES ($1, $2, $3, 'pending', $4)",
);
const ERASURE_COUNTS: Stmt<'static> = Stmt::write("UPDATE erasures SET counts = $2 WHERE id = $1");
const GET_ERASURE: Stmt<'static> = Stmt::read("SELECT * FROM erasures WHERE id = $1");
const FINISH_ERASURE: Stmt<'static> = Stmt::write(
    "UPDATE erasures SET status = 'done', counts = $2, completed_at = $3, user_id = NULL \
     WHERE id = $1",
);

/// What erasing a user removes from the store where rows hold only their address: by email
/// (`$1`) in one of their tenants (`$2`).
const ERASE_BY_EMAIL: [(&str, Stmt<'static>); 1] = [(
    "billing_subscriptions.billing_email",
    Stmt::write(
        "UPDATE billing_subscriptions SET billing_email = NULL \
         WHERE billing_email = $1 AND tenant_id = $2",
    ),
)];

/// What erasing a user removes from the store by user id (`$1`), table by table.
const ERASE_ROWS: [(&str, Stmt<'static>); 6] = [
    (
        "inbox_notifications",
        Stmt::write("DELETE FROM inbox_notifications WHERE user_id = $1"),
    ),
    (
        "profile_exports",
        Stmt::write("DELETE FROM profile_exports WHERE user_id = $1"),
    ),
    (
        "api_keys.created_by",
        Stmt::write("UPDATE api_keys SET created_by = NULL WHERE created_by = $1"),
    ),
    (
        "refresh_tokens",
        Stmt::write("DELETE FROM refresh_tokens WHERE user_id = $1"),
    ),
    (
        "memberships",
        Stmt::write("DELETE FROM memberships WHERE user_id = $1"),
    ),
    ("users", Stmt::write("DELETE FROM users WHERE id = $1")),
];

fn export<R: Columns>(row: &R) -> Result<ProfileExport> {
    Ok(ProfileExport {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        user_id: row.uuid("user_id")?,
        status: row.text("status")?,
        document: row.opt_json("document")?,
        created_at: row.time("created_at")?,
        completed_at: row.opt_time("completed_at")?,
    })
}

#[async_trait]
impl<S: SqlBackend + std::fmt::Debug> ProfileStore for S {
    fn profile_backend(&self) -> &'static str {
        S::NAME
    }

    async fn prepare_profiles(&self) -> Result<()> {
        // The migrations made the table.
        Ok(())
    }

    async fn get_item(&self, user_id: Uuid, item: ProfileItem) -> Result<Option<Versioned>> {
        let row = self
            .fetch_optional(GET_ITEM, &args![user_id, item.as_str()])
            .await?;
        row.map(|r| {
            Ok(Versioned {
                data: r.json("data")?,
                version: r.big("version")?,
                updated_at: r.time("updated_at")?,
            })
        })
        .transpose()
    }

    async fn put_item(
        &self,
        user_id: Uuid,
        item: ProfileItem,
        data: &serde_json::Value,
        expected: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>> {
        let row = if expected == 0 {
            self.fetch_optional(CREATE_ITEM, &args![user_id, item.as_str(), data, now])
                .await?
        } else {
            self.fetch_optional(
                UPDATE_ITEM,
                &args![user_id, item.as_str(), data, now, expected],
            )
            .await?
        };
        row.map(|r| r.big("version")).transpose()
    }

    async fn erase_items(&self, user_id: Uuid) -> Result<u64> {
        self.execute(ERASE_ITEMS, &args![user_id]).await
    }
}

#[async_trait]
impl<S: SqlBackend> PrivacyStore for S {
    async fn create_export(&self, e: &ProfileExport, job: NewJob) -> Result<Vec<Job>> {
        let mut tx = self.begin_tx().await?;
        tx.execute(
            INSERT_EXPORT,
            &args![e.id, e.tenant_id.as_str(), e.user_id, e.created_at],
        )
        .await?;
        tx.enqueue_jobs(vec![job]).await?;
        tx.commit_tx().await
    }

    async fn get_export(&self, id: Uuid) -> Result<Option<ProfileExport>> {
        let row = self.fetch_optional(GET_EXPORT, &args![id]).await?;
        row.as_ref().map(export).transpose()
    }

    async fn finish_export(
        &self,
        id: Uuid,
        document: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_tx().await?;
        let select = format!("{EXPORT_STATE}{}", S::FOR_UPDATE);
        let Some(state) = tx.fetch_optional(Stmt::write(&select), &args![id]).await? else {
            return Ok(false);
        };
        tx.execute(FINISH_EXPORT, &args![id, document, now]).await?;
        if state.text(1)? == "pending" {
            let event = ProfileEvent {
                item: None,
                version: None,
                request_id: Some(id),
                counts: None,
            };
            let subject = format!("exports/{id}");
            record_event(&mut tx, &state.text(0)?, PROFILE_EXPORTED, &subject, &event).await?;
        }
        tx.commit_tx().await?;
        Ok(true)
    }

    async fn create_erasure(&self, e: &Erasure, job: NewJob) -> Result<Vec<Job>> {
        let mut tx = self.begin_tx().await?;
        tx.execute(
            INSERT_ERASURE,
            &args![e.id, e.tenant_id.as_str(), e.user_id, e.requested_at],
        )
        .await?;
        tx.enqueue_jobs(vec![job]).await?;
        tx.commit_tx().await
    }

    async fn get_erasure(&self, id: Uuid) -> Result<Option<Erasure>> {
        let row = self.fetch_optional(GET_ERASURE, &args![id]).await?;
        row.map(|r| {
            Ok(Erasure {
                id: r.uuid("id")?,
                tenant_id: r.text("tenant_id")?,
                user_id: r.opt_uuid("user_id")?,
                status: r.text("status")?,
                counts: r.opt_json("counts")?,
                requested_at: r.time("requested_at")?,
                completed_at: r.opt_time("completed_at")?,
            })
        })
        .transpose()
    }

    async fn finish_erasure(
        &self,
        id: Uuid,
        counts: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_tx().await?;
        let select = format!("{ERASURE_STATE}{}", S::FOR_UPDATE);
        let Some(state) = tx.fetch_optional(Stmt::write(&select), &args![id]).await? else {
            return Ok(false);
        };
        tx.execute(FINISH_ERASURE, &args![id, counts, now]).await?;
        if state.text(1)? == "pending" {
            let event = ProfileEvent {
                item: None,
                version: None,
                request_id: Some(id),
                counts: serde_json::from_value(counts.clone()).ok(),
            };
            let subject = format!("erasures/{id}");
            record_event(&mut tx, &state.text(0)?, PROFILE_ERASED, &subject, &event).await?;
        }
        tx.commit_tx().await?;
        Ok(true)
    }

    async fn erase_user_rows(
        &self,
        erasure_id: Uuid,
        user_id: Uuid,
        email: &str,
        tenants: &[String],
    ) -> Result<BTreeMap<String, u64>> {
        // Finished emails to the address keep no trace of it: payload, result and errors go
        // (the row stays, for counts and history).
        let scrub = format!(
            "UPDATE job_history SET payload = $2, result = NULL, last_error = NULL, errors = NULL \
             WHERE kind = 'notification.email' AND tenant_id = $3 AND {}",
            S::payload_contains("$1")
        );
        let addressed = serde_json::json!({ "to": email });
        let erased = serde_json::json!({ "erased": true });
        let mut tx = self.begin_tx().await?;
        let mut counts = BTreeMap::<String, u64>::new();
        for tenant in tenants {
            let n = tx
                .execute(
                    Stmt::write(&scrub),
                    &args![&addressed, &erased, tenant.as_str()],
                )
                .await?;
            *counts
                .entry("job_history.notification_email".to_owned())
                .or_default() += n;
            for (table, stmt) in ERASE_BY_EMAIL {
                let n = tx.execute(stmt, &args![email, tenant.as_str()]).await?;
                *counts.entry(table.to_owned()).or_default() += n;
            }
        }
        for (table, stmt) in ERASE_ROWS {
            let n = tx.execute(stmt, &args![user_id]).await?;
            counts.insert(table.to_owned(), n);
        }
        let recorded =
            serde_json::to_value(&counts).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
        tx.execute(ERASURE_COUNTS, &args![erasure_id, &recorded])
            .await?;
        tx.commit_tx().await?;
        Ok(counts)
    }
}
