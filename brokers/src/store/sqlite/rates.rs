//! Rate-limit reservations on SQLite (see `store/rates.rs`): the processes sharing the file
//! share its clock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::Rate;
use sqlx::Connection;
use uuid::Uuid;

use super::{from_micros, micros, SqliteStore};
use crate::store::rates::{starts_of, Starts};
use crate::store::{Deferral, RateLimits};
use crate::Result;

/// How long a grant waits for its job: a day.
const GRANT_KEPT_MICROS: i64 = 86_400_000_000;

#[async_trait]
impl RateLimits for SqliteStore {
    async fn reserve_starts(&self, key: &str, rate: &Rate, n: u32) -> Result<Starts> {
        let (mut conn, now) = self.write().await?;
        let span = rate.interval_micros().saturating_mul(i64::from(n));
        let tat: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, tat) VALUES (?1, ?2 + ?3) \
             ON CONFLICT (key) DO UPDATE SET tat = max(tat, ?2) + ?3 RETURNING tat",
        )
        .bind(key)
        .bind(now)
        .bind(span)
        .fetch_one(&mut *conn)
        .await?;
        starts_of(rate, tat, now, n)
    }

    async fn defer_to_starts(&self, worker_id: &str, deferrals: &[Deferral]) -> Result<u64> {
        if deferrals.is_empty() {
            return Ok(0);
        }
        let (mut conn, _) = self.write().await?;
        let mut tx = conn.begin().await?;
        let mut tenants = Vec::new();
        for d in deferrals {
            let moved: Option<String> = sqlx::query_scalar(
                "UPDATE jobs SET state = 'scheduled', attempts = MAX(attempts - 1, 0), \
                        worker_id = NULL, lease_expires_at = NULL, run_at = ?1 \
                 WHERE id = ?2 AND attempts = ?3 AND worker_id = ?4 AND state = 'running' \
                 RETURNING tenant_id",
            )
            .bind(micros(d.run_at))
            .bind(d.id.to_string())
            .bind(d.attempt)
            .bind(worker_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(tenant) = moved {
                sqlx::query(
                    "INSERT INTO rate_grants (job_id, attempt, start_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(d.id.to_string())
                .bind(d.attempt)
                .bind(micros(d.start_at))
                .execute(&mut *tx)
                .await?;
                tenants.push(tenant);
            }
        }
        tx.commit().await?;
        self.changed(tenants.iter().map(String::as_str));
        Ok(tenants.len() as u64)
    }

    async fn take_grants(&self, jobs: &[(Uuid, i32)]) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        // Grants of jobs that never came back (cancelled while they waited) go after a day.
        sqlx::query("DELETE FROM rate_grants WHERE start_at < ?1")
            .bind(now.saturating_sub(GRANT_KEPT_MICROS))
            .execute(&mut *tx)
            .await?;
        let mut held = Vec::new();
        for (id, attempt) in jobs {
            let start: Option<i64> = sqlx::query_scalar(
                "DELETE FROM rate_grants WHERE job_id = ?1 AND attempt = ?2 RETURNING start_at",
            )
            .bind(id.to_string())
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(start) = start {
                held.push((*id, from_micros(start)?));
            }
        }
        tx.commit().await?;
        Ok(held)
    }
}
