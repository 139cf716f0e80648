//! Rate-limit reservations on PostgreSQL (see `store/rates.rs`): one upsert per limit, by the
//! database's clock, so that workers on machines whose clocks differ share one rate.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::Rate;
use uuid::Uuid;

use super::PgStore;
use crate::store::rates::{starts_of, Starts};
use crate::store::{Deferral, RateLimits};
use crate::Result;

const NOW_MICROS: &str = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint";

#[async_trait]
impl RateLimits for PgStore {
    async fn reserve_starts(&self, key: &str, rate: &Rate, n: u32) -> Result<Starts> {
        let sql = format!(
            "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, {NOW_MICROS} + $2) \
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, {NOW_MICROS}) + $2 \
             RETURNING tat, {NOW_MICROS}"
        );
        let span = rate.interval_micros().saturating_mul(i64::from(n));
        let (tat, now): (i64, i64) = sqlx::query_as(&sql)
            .bind(key)
            .bind(span)
            .fetch_one(&self.pool)
            .await?;
        starts_of(rate, tat, now, n)
    }

    async fn defer_to_starts(&self, worker_id: &str, deferrals: &[Deferral]) -> Result<u64> {
        if deferrals.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = deferrals.iter().map(|d| d.id).collect();
        let attempts: Vec<i32> = deferrals.iter().map(|d| d.attempt).collect();
        let starts: Vec<DateTime<Utc>> = deferrals.iter().map(|d| d.start_at).collect();
        let run_ats: Vec<DateTime<Utc>> = deferrals.iter().map(|d| d.run_at).collect();
        let moved: Vec<(String, String)> = sqlx::query_as(
            "WITH d AS (SELECT * FROM unnest($2::uuid[], $3::int[], $4::timestamptz[], \
                                             $5::timestamptz[]) AS d(id, attempt, start_at, run_at)), \
             moved AS ( \
                 UPDATE jobs j SET state = 'scheduled', attempts = GREATEST(j.attempts - 1, 0), \
                        worker_id = NULL, lease_expires_at = NULL, run_at = d.run_at \
                 FROM d WHERE j.id = ANY($2) AND j.id = d.id AND j.attempts = d.attempt \
                   AND j.worker_id = $1 AND j.state = 'running' \
                 RETURNING j.id, d.attempt, d.start_at, j.tenant_id, j.queue), \
             granted AS ( \
                 INSERT INTO rate_grants (job_id, attempt, start_at) \
                 SELECT id, attempt, start_at FROM moved ON CONFLICT DO NOTHING) \
             SELECT tenant_id, queue FROM moved",
        )
        .bind(worker_id)
        .bind(&ids)
        .bind(&attempts)
        .bind(&starts)
        .bind(&run_ats)
        .fetch_all(&self.pool)
        .await?;
        self.announce_tenants(moved.iter().map(|(t, _)| t.as_str()));
        Ok(moved.len() as u64)
    }

    async fn take_grants(&self, jobs: &[(Uuid, i32)]) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = jobs.iter().map(|(id, _)| *id).collect();
        let attempts: Vec<i32> = jobs.iter().map(|(_, a)| *a).collect();
        Ok(sqlx::query_as(
            "DELETE FROM rate_grants g USING unnest($1::uuid[], $2::int[]) AS t(id, attempt) \
             WHERE g.job_id = ANY($1) AND g.job_id = t.id AND g.attempt = t.attempt \
             RETURNING g.job_id, g.start_at",
        )
        .bind(&ids)
        .bind(&attempts)
        .fetch_all(&self.pool)
        .await?)
    }
}
