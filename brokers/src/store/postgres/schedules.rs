//! The scheduler operations PostgreSQL does its own way: row locks, the server's clock for
//! leases, `SKIP LOCKED` pruning.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::sql::{lease_from_row, ScheduleDialect};

#[async_trait]
impl ScheduleDialect for PgStore {
    async fn fire(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult> {
        let mut tx = self.pool.begin().await?;
        // FOR SHARE: a rival's takeover (an UPDATE of this row) waits for this commit, so it
        // sees what this fire wrote.
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT token FROM leases WHERE name = $1 AND holder = $2 AND token = $3 \
               AND expires_at > clock_timestamp() FOR SHARE",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(FireResult::NotLeader);
        }
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM schedules WHERE tenant_id = $1 AND name = $2 AND version = $3 \
               AND fired_through = $4 AND NOT paused FOR UPDATE",
        )
        .bind(&fire.tenant_id)
        .bind(&fire.name)
        .bind(fire.version)
        .bind(fire.previous_fired_through)
        .fetch_optional(&mut *tx)
        .await?;
        if current.is_none() {
            return Ok(FireResult::Stale);
        }
        let inserted = self.insert_in(&mut tx, &fire.jobs).await?;
        let last = inserted.last().map(|i| (i.job.id, i.job.run_at));
        sqlx::query(
            "UPDATE schedules SET fired_through = $3, next_fire_at = $4, \
                    last_fire_at = COALESCE($5, last_fire_at), last_job_id = COALESCE($6, last_job_id) \
             WHERE tenant_id = $1 AND name = $2",
        )
        .bind(&fire.tenant_id)
        .bind(&fire.name)
        .bind(fire.fired_through)
        .bind(fire.next_fire_at)
        .bind(last.map(|l| l.1))
        .bind(last.map(|l| l.0))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce_queues(
            inserted
                .iter()
                .filter(|i| i.created && i.job.state == JobState::Queued)
                .map(|i| i.job.queue.as_str()),
        );
        Ok(FireResult::Fired(inserted))
    }

    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        let row = sqlx::query(
            "INSERT INTO leases AS l (name, holder, token, acquired_at, expires_at) \
             VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond') \
             ON CONFLICT (name) DO UPDATE SET \
                 token = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp() \
                              THEN l.token ELSE l.token + 1 END, \
                 acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp() \
                                    THEN l.acquired_at ELSE EXCLUDED.acquired_at END, \
                 holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() \
             RETURNING *",
        )
        .bind(name)
        .bind(holder)
        .bind(lease_ms(ttl))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn give_up(&self, lease: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET expires_at = clock_timestamp() \
             WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune(&self, state: JobState, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        // The keys of pruned jobs go with them, so that a key can be used again afterwards.
        let done: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM job_history WHERE id IN ( \
                               SELECT id FROM job_history WHERE state = $1 AND finished_at < $2 \
                               ORDER BY finished_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                           RETURNING id, tenant_id, idempotency_key), \
                  keys AS (DELETE FROM job_keys k USING gone g \
                           WHERE g.idempotency_key IS NOT NULL AND k.tenant_id = g.tenant_id \
                             AND k.key = g.idempotency_key AND k.job_id = g.id) \
             SELECT count(*) FROM gone",
        )
        .bind(state.as_str())
        .bind(before)
        .bind(limit)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(done).unwrap_or(0))
    }
}
