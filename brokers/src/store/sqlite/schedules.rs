//! The scheduler operations SQLite does its own way: the writer's clock, one writer instead of
//! row locks.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::sql::{lease_from_row, ScheduleDialect};

#[async_trait]
impl ScheduleDialect for SqliteStore {
    async fn fire(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult> {
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT token FROM leases WHERE name = ?1 AND holder = ?2 AND token = ?3 AND expires_at > ?4",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(FireResult::NotLeader);
        }
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM schedules WHERE tenant_id = ?1 AND name = ?2 AND version = ?3 \
               AND fired_through = ?4 AND NOT paused",
        )
        .bind(&fire.tenant_id)
        .bind(&fire.name)
        .bind(fire.version)
        .bind(micros(fire.previous_fired_through))
        .fetch_optional(&mut *tx)
        .await?;
        if current.is_none() {
            return Ok(FireResult::Stale);
        }
        let (inserted, ready) = insert_in(&mut tx, &fire.jobs, from_micros(now)?).await?;
        let last = inserted
            .last()
            .map(|i| (i.job.id.to_string(), micros(i.job.run_at)));
        sqlx::query(
            "UPDATE schedules SET fired_through = ?3, next_fire_at = ?4, \
                    last_fire_at = COALESCE(?5, last_fire_at), last_job_id = COALESCE(?6, last_job_id) \
             WHERE tenant_id = ?1 AND name = ?2",
        )
        .bind(&fire.tenant_id)
        .bind(&fire.name)
        .bind(micros(fire.fired_through))
        .bind(fire.next_fire_at.map(micros))
        .bind(last.as_ref().map(|l| l.1))
        .bind(last.as_ref().map(|l| l.0.as_str()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if ready {
            self.wake();
        }
        Ok(FireResult::Fired(inserted))
    }

    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        let (mut conn, now) = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, token, acquired_at, expires_at) VALUES (?1, ?2, 1, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET \
                 token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3 \
                              THEN leases.token ELSE leases.token + 1 END, \
                 acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3 \
                                    THEN leases.acquired_at ELSE ?3 END, \
                 holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3 \
             RETURNING *",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(lease_until(now, ttl))
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn give_up(&self, lease: &Lease) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        sqlx::query(
            "UPDATE leases SET expires_at = ?4 WHERE name = ?1 AND holder = ?2 AND token = ?3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn prune(&self, state: JobState, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let (mut conn, _) = self.write().await?;
        let mut tx = conn.begin().await?;
        let gone: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "DELETE FROM job_history WHERE id IN ( \
                 SELECT id FROM job_history WHERE state = ?1 AND finished_at < ?2 \
                 ORDER BY finished_at LIMIT ?3) RETURNING id, tenant_id, idempotency_key",
        )
        .bind(state.as_str())
        .bind(micros(before))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        forget_keys(&mut tx, &gone).await?;
        tx.commit().await?;
        Ok(gone.len() as u64)
    }
}
