//! [`WebhookStore`] once for both backends.

use async_trait::async_trait;
use pysaas_jobs::kinds::notification::WebhookDelivery;
use pysaas_jobs::{Job, NewJob};
use uuid::Uuid;

use super::{args, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::webhooks::{
    Attempt, AttemptRecorded, Delivery, DeliveryStatus, Endpoint, WebhookStore,
};
use crate::{Result, StoreError};

const INSERT_ENDPOINT: Stmt<'static> = Stmt::write(
    "INSERT INTO webhook_endpoints \
       (id, tenant_id, url, event_types, secret, enabled, consecutive_failures, created_at, \
        updated_at) \
     VALUES ($1, $2, $3, $4, $5, true, 0, $6, $6)",
);
const LIST_ENDPOINTS: Stmt<'static> =
    Stmt::read("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id");
const GET_ENDPOINT: Stmt<'static> =
    Stmt::read("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2");
const DELETE_ENDPOINT: Stmt<'static> =
    Stmt::write("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2");
const ROTATE: Stmt<'static> = Stmt::write(
    "UPDATE webhook_endpoints SET secret = $3, updated_at = $4 \
     WHERE tenant_id = $1 AND id = $2 RETURNING *",
);
const SET_ENABLED: Stmt<'static> = Stmt::write(
    "UPDATE webhook_endpoints \
     SET enabled = $3, disabled_reason = $4, updated_at = $5, \
         consecutive_failures = CASE WHEN $3 THEN 0 ELSE consecutive_failures END \
     WHERE tenant_id = $1 AND id = $2 RETURNING *",
);
const ENABLED_ENDPOINTS: Stmt<'static> = Stmt::write(
    "SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND enabled ORDER BY created_at, id",
);
const INSERT_DELIVERY: Stmt<'static> = Stmt::write(
    "INSERT INTO webhook_deliveries \
       (id, tenant_id, endpoint_id, event_id, event_type, payload, status, attempts, replay_of, \
        created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8) ON CONFLICT DO NOTHING",
);
const GET_DELIVERY: Stmt<'static> = Stmt::read("SELECT * FROM webhook_deliveries WHERE id = $1");
const TENANT_DELIVERY: Stmt<'static> =
    Stmt::write("SELECT * FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2");
const ENDPOINT_BY_ID: Stmt<'static> = Stmt::read("SELECT * FROM webhook_endpoints WHERE id = $1");
const RECORD_DELIVERY: Stmt<'static> = Stmt::write(
    "UPDATE webhook_deliveries \
     SET attempts = attempts + 1, status = $2, response_code = $3, latency_ms = $4, \
         last_error = $5, last_attempt_at = $6 \
     WHERE id = $1 RETURNING endpoint_id",
);
const ENDPOINT_SUCCEEDED: Stmt<'static> =
    Stmt::write("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1 RETURNING *");
const ENDPOINT_FAILED: Stmt<'static> = Stmt::write(
    "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 \
     WHERE id = $1 RETURNING *",
);
const DISABLE_ENDPOINT: Stmt<'static> = Stmt::write(
    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 \
     WHERE id = $1 AND enabled RETURNING *",
);
const LIST_DELIVERIES: Stmt<'static> = Stmt::read(
    "SELECT * FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 \
     ORDER BY created_at DESC, id DESC LIMIT $3",
);

fn endpoint_from<R: Columns>(row: &R) -> Result<Endpoint> {
    Ok(Endpoint {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        url: row.text("url")?,
        event_types: row
            .text("event_types")?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        secret: row.text("secret")?,
        enabled: row.flag("enabled")?,
        consecutive_failures: row.int("consecutive_failures")?,
        disabled_reason: row.opt_text("disabled_reason")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn delivery_from<R: Columns>(row: &R) -> Result<Delivery> {
    let status = match row.text("status")?.as_str() {
        "pending" => DeliveryStatus::Pending,
        "succeeded" => DeliveryStatus::Succeeded,
        "failed" => DeliveryStatus::Failed,
        other => return Err(StoreError::Corrupt(format!("delivery status `{other}`"))),
    };
    Ok(Delivery {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        endpoint_id: row.uuid("endpoint_id")?,
        event_id: row.uuid("event_id")?,
        event_type: row.text("event_type")?,
        payload: row.json("payload")?,
        status,
        attempts: row.int("attempts")?,
        response_code: row.opt_int("response_code")?,
        latency_ms: row.opt_int("latency_ms")?,
        last_error: row.opt_text("last_error")?,
        replay_of: row.opt_uuid("replay_of")?,
        created_at: row.time("created_at")?,
        last_attempt_at: row.opt_time("last_attempt_at")?,
    })
}

/// Inserts a pending delivery and its job (keyed: a repeat adds neither); the job's
/// `created` flag says whether it is new.
async fn add_delivery<T: SqlTx>(
    tx: &mut T,
    delivery: &Delivery,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let inserted = tx
        .execute(
            INSERT_DELIVERY,
            &args![
                delivery.id,
                delivery.tenant_id.as_str(),
                delivery.endpoint_id,
                delivery.event_id,
                delivery.event_type.as_str(),
                &delivery.payload,
                delivery.replay_of,
                now,
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(());
    }
    let mut job = NewJob::of(
        delivery.tenant_id.clone(),
        &WebhookDelivery {
            delivery_id: delivery.id,
        },
    )
    .map_err(|e| StoreError::Corrupt(format!("delivery job payload: {e}")))?;
    job.idempotency_key = Some(format!("webhook-delivery-{}", delivery.id));
    tx.enqueue_jobs(vec![job]).await?;
    Ok(())
}

fn pending(
    tenant_id: &str,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &serde_json::Value,
    replay_of: Option<Uuid>,
    now: chrono::DateTime<chrono::Utc>,
) -> Delivery {
    Delivery {
        id: Uuid::now_v7(),
        tenant_id: tenant_id.to_owned(),
        endpoint_id,
        event_id,
        event_type: event_type.to_owned(),
        payload: payload.clone(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        response_code: None,
        latency_ms: None,
        last_error: None,
        replay_of,
        created_at: now,
        last_attempt_at: None,
    }
}

#[async_trait]
impl<S: SqlBackend> WebhookStore for S {
    async fn create_endpoint(&self, e: &Endpoint) -> Result<()> {
        self.execute(
            INSERT_ENDPOINT,
            &args![
                e.id,
                e.tenant_id.as_str(),
                e.url.as_str(),
                e.event_types.join(" ").as_str(),
                e.secret.as_str(),
                e.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn list_endpoints(&self, tenant_id: &str) -> Result<Vec<Endpoint>> {
        let rows = self.fetch_all(LIST_ENDPOINTS, &args![tenant_id]).await?;
        rows.iter().map(endpoint_from).collect()
    }

    async fn get_endpoint(&self, tenant_id: &str, id: Uuid) -> Result<Option<Endpoint>> {
        let row = self
            .fetch_optional(GET_ENDPOINT, &args![tenant_id, id])
            .await?;
        row.map(|r| endpoint_from(&r)).transpose()
    }

    async fn delete_endpoint(&self, tenant_id: &str, id: Uuid) -> Result<bool> {
        Ok(self.execute(DELETE_ENDPOINT, &args![tenant_id, id]).await? > 0)
    }

    async fn rotate_secret(
        &self,
        tenant_id: &str,
        id: Uuid,
        secret: &str,
    ) -> Result<Option<Endpoint>> {
        let now = chrono::Utc::now();
        let row = self
            .fetch_optional(ROTATE, &args![tenant_id, id, secret, now])
            .await?;
        row.map(|r| endpoint_from(&r)).transpose()
    }

    async fn set_endpoint_enabled(
        &self,
        tenant_id: &str,
        id: Uuid,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<Option<Endpoint>> {
        let now = chrono::Utc::now();
        let row = self
            .fetch_optional(SET_ENABLED, &args![tenant_id, id, enabled, reason, now])
            .await?;
        row.map(|r| endpoint_from(&r)).transpose()
    }

    async fn fan_out(
        &self,
        tenant_id: &str,
        event_id: Uuid,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Vec<Job>> {
        let now = chrono::Utc::now();
        let mut tx = self.begin_tx().await?;
        let rows = tx.fetch_all(ENABLED_ENDPOINTS, &args![tenant_id]).await?;
        for row in &rows {
            let endpoint = endpoint_from(row)?;
            if endpoint.takes(event_type) {
                let d = pending(
                    tenant_id,
                    endpoint.id,
                    event_id,
                    event_type,
                    payload,
                    None,
                    now,
                );
                add_delivery(&mut tx, &d, now).await?;
            }
        }
        tx.commit_tx().await
    }

    async fn delivery_target(&self, id: Uuid) -> Result<Option<(Delivery, Endpoint)>> {
        let Some(row) = self.fetch_optional(GET_DELIVERY, &args![id]).await? else {
            return Ok(None);
        };
        let delivery = delivery_from(&row)?;
        let Some(row) = self
            .fetch_optional(ENDPOINT_BY_ID, &args![delivery.endpoint_id])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((delivery, endpoint_from(&row)?)))
    }

    async fn record_attempt(
        &self,
        delivery_id: Uuid,
        attempt: &Attempt,
        disable_after: i32,
    ) -> Result<Option<AttemptRecorded>> {
        let now = chrono::Utc::now();
        let status = match (&attempt.error, attempt.last) {
            (None, _) => DeliveryStatus::Succeeded,
            (Some(_), true) => DeliveryStatus::Failed,
            (Some(_), false) => DeliveryStatus::Pending,
        };
        let mut tx = self.begin_tx().await?;
        let Some(row) = tx
            .fetch_optional(
                RECORD_DELIVERY,
                &args![
                    delivery_id,
                    status.as_str(),
                    attempt.response_code,
                    attempt.latency_ms,
                    attempt.error.as_deref(),
                    now,
                ],
            )
            .await?
        else {
            // The endpoint (and its log) was deleted meanwhile.
            return Ok(None);
        };
        let endpoint_id = row.uuid("endpoint_id")?;
        let stmt = if attempt.error.is_none() {
            ENDPOINT_SUCCEEDED
        } else {
            ENDPOINT_FAILED
        };
        let mut endpoint = match tx.fetch_optional(stmt, &args![endpoint_id]).await? {
            Some(row) => endpoint_from(&row)?,
            None => return Ok(None),
        };
        let mut disabled_now = false;
        if endpoint.enabled && endpoint.consecutive_failures >= disable_after.max(1) {
            let reason = format!(
                "disabled after {} failed deliveries in a row",
                endpoint.consecutive_failures
            );
            if let Some(row) = tx
                .fetch_optional(DISABLE_ENDPOINT, &args![endpoint_id, reason.as_str(), now])
                .await?
            {
                endpoint = endpoint_from(&row)?;
                disabled_now = true;
            }
        }
        tx.commit_tx().await?;
        Ok(Some(AttemptRecorded {
            endpoint,
            disabled_now,
        }))
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        endpoint_id: Uuid,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let rows = self
            .fetch_all(LIST_DELIVERIES, &args![tenant_id, endpoint_id, limit])
            .await?;
        rows.iter().map(delivery_from).collect()
    }

    async fn replay_delivery(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<(Delivery, Vec<Job>)>> {
        let now = chrono::Utc::now();
        let mut tx = self.begin_tx().await?;
        let Some(row) = tx
            .fetch_optional(TENANT_DELIVERY, &args![tenant_id, id])
            .await?
        else {
            return Ok(None);
        };
        let original = delivery_from(&row)?;
        let replay = pending(
            tenant_id,
            original.endpoint_id,
            original.event_id,
            &original.event_type,
            &original.payload,
            Some(original.id),
            now,
        );
        add_delivery(&mut tx, &replay, now).await?;
        let jobs = tx.commit_tx().await?;
        Ok(Some((replay, jobs)))
    }
}
