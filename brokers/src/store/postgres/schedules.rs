//! [`SchedulerStore`] on PostgreSQL.

#[allow(clippy::wildcard_imports)]
use super::*;

fn schedule_from_row(row: &PgRow) -> Result<Schedule> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    Ok(Schedule {
        tenant_id: row.try_get("tenant_id")?,
        spec: ScheduleSpec {
            name: row.try_get("name")?,
            cron: row.try_get("cron")?,
            timezone: row.try_get("timezone")?,
            kind: row.try_get("kind")?,
            payload: row.try_get("payload")?,
            queue: row.try_get("queue")?,
            priority: row.try_get("priority")?,
            max_attempts: row.try_get("max_attempts")?,
            misfire: row
                .try_get::<&str, _>("misfire")?
                .parse()
                .map_err(corrupt)?,
            catch_up_max: u32::try_from(row.try_get::<i32, _>("catch_up_max")?)
                .map_err(|e| StoreError::Corrupt(format!("catch_up_max: {e}")))?,
            paused: row.try_get("paused")?,
        },
        source: row.try_get::<&str, _>("source")?.parse().map_err(corrupt)?,
        fired_through: row.try_get("fired_through")?,
        next_fire_at: row.try_get("next_fire_at")?,
        last_fire_at: row.try_get("last_fire_at")?,
        last_job_id: row.try_get("last_job_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

fn lease_from_row(row: &PgRow) -> Result<Lease> {
    Ok(Lease {
        name: row.try_get("name")?,
        holder: row.try_get("holder")?,
        token: row.try_get("token")?,
        acquired_at: row.try_get("acquired_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn catch_up_max(schedule: &Schedule) -> i32 {
    i32::try_from(schedule.spec.catch_up_max).unwrap_or(i32::MAX)
}

/// Binds a schedule's columns as `$1 ..= $15`: tenant, name, definition, paused, source,
/// fired_through, next_fire_at.
fn bind_schedule<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    s: &'q Schedule,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&s.tenant_id)
        .bind(&s.spec.name)
        .bind(&s.spec.cron)
        .bind(&s.spec.timezone)
        .bind(&s.spec.kind)
        .bind(&s.spec.payload)
        .bind(s.spec.queue.as_deref())
        .bind(s.spec.priority)
        .bind(s.spec.max_attempts)
        .bind(s.spec.misfire.as_str())
        .bind(catch_up_max(s))
        .bind(s.spec.paused)
        .bind(s.source.as_str())
        .bind(s.fired_through)
        .bind(s.next_fire_at)
}

#[async_trait]
impl SchedulerStore for PgStore {
    async fn create_schedule(&self, s: &Schedule) -> Result<bool> {
        let query = sqlx::query(
            "INSERT INTO schedules (tenant_id, name, cron, timezone, kind, payload, queue, priority, \
                                    max_attempts, misfire, catch_up_max, paused, source, fired_through, \
                                    next_fire_at, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now(), now(), 1) \
             ON CONFLICT (tenant_id, name) DO NOTHING",
        );
        let done = bind_schedule(query, s).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_schedule(&self, tenant_id: &str, name: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query("SELECT * FROM schedules WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list_schedules(&self, tenant_id: &str) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT * FROM schedules WHERE tenant_id = $1 ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn update_schedule(&self, s: &Schedule) -> Result<Option<Schedule>> {
        let query = sqlx::query(
            "UPDATE schedules SET cron = $3, timezone = $4, kind = $5, payload = $6, queue = $7, \
                    priority = $8, max_attempts = $9, misfire = $10, catch_up_max = $11, paused = $12, \
                    source = $13, fired_through = $14, next_fire_at = $15, updated_at = now(), \
                    version = version + 1 \
             WHERE tenant_id = $1 AND name = $2 AND version = $16 RETURNING *",
        );
        let row = bind_schedule(query, s)
            .bind(s.version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn delete_schedule(&self, tenant_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(
            "SELECT * FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1 \
             ORDER BY next_fire_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn next_schedule_fire(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT min(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn fire_schedule(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult> {
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

    async fn record_trigger(
        &self,
        tenant_id: &str,
        name: &str,
        job_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE schedules SET last_fire_at = $3, last_job_id = $4 WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(at)
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
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

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
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

    async fn current_lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query("SELECT * FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn prune_finished(
        &self,
        state: JobState,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
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
        .bind(finished_before)
        .bind(limit)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(done).unwrap_or(0))
    }
}
