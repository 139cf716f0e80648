//! [`SchedulerStore`] on SQLite.

#[allow(clippy::wildcard_imports)]
use super::*;

fn schedule_from_row(row: &SqliteRow) -> Result<Schedule> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let last_job_id = row
        .try_get::<Option<&str>, _>("last_job_id")?
        .map(|id| {
            Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(format!("last_job_id `{id}`: {e}")))
        })
        .transpose()?;
    Ok(Schedule {
        tenant_id: row.try_get("tenant_id")?,
        spec: ScheduleSpec {
            name: row.try_get("name")?,
            cron: row.try_get("cron")?,
            timezone: row.try_get("timezone")?,
            kind: row.try_get("kind")?,
            payload: json(row.try_get("payload")?)?,
            queue: row.try_get("queue")?,
            priority: row.try_get("priority")?,
            max_attempts: row.try_get("max_attempts")?,
            misfire: row
                .try_get::<&str, _>("misfire")?
                .parse()
                .map_err(corrupt)?,
            catch_up_max: u32::try_from(row.try_get::<i64, _>("catch_up_max")?)
                .map_err(|e| StoreError::Corrupt(format!("catch_up_max: {e}")))?,
            paused: row.try_get("paused")?,
        },
        source: row.try_get::<&str, _>("source")?.parse().map_err(corrupt)?,
        fired_through: from_micros(row.try_get("fired_through")?)?,
        next_fire_at: opt_time(row, "next_fire_at")?,
        last_fire_at: opt_time(row, "last_fire_at")?,
        last_job_id,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        version: row.try_get("version")?,
    })
}

fn lease_from_row(row: &SqliteRow) -> Result<Lease> {
    Ok(Lease {
        name: row.try_get("name")?,
        holder: row.try_get("holder")?,
        token: row.try_get("token")?,
        acquired_at: from_micros(row.try_get("acquired_at")?)?,
        expires_at: from_micros(row.try_get("expires_at")?)?,
    })
}

/// Binds a schedule's columns as `?1 ..= ?15`: tenant, name, definition, paused, source,
/// fired_through, next_fire_at.
fn bind_schedule<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    s: &'q Schedule,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(&s.tenant_id)
        .bind(&s.spec.name)
        .bind(&s.spec.cron)
        .bind(&s.spec.timezone)
        .bind(&s.spec.kind)
        .bind(s.spec.payload.to_string())
        .bind(s.spec.queue.as_deref())
        .bind(s.spec.priority)
        .bind(s.spec.max_attempts)
        .bind(s.spec.misfire.as_str())
        .bind(i64::from(s.spec.catch_up_max))
        .bind(s.spec.paused)
        .bind(s.source.as_str())
        .bind(micros(s.fired_through))
        .bind(s.next_fire_at.map(micros))
}

#[async_trait]
impl SchedulerStore for SqliteStore {
    async fn create_schedule(&self, s: &Schedule) -> Result<bool> {
        let (mut conn, now) = self.write().await?;
        let query = sqlx::query(
            "INSERT INTO schedules (tenant_id, name, cron, timezone, kind, payload, queue, priority, \
                                    max_attempts, misfire, catch_up_max, paused, source, fired_through, \
                                    next_fire_at, created_at, updated_at, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, 1) \
             ON CONFLICT (tenant_id, name) DO NOTHING",
        );
        let done = bind_schedule(query, s)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_schedule(&self, tenant_id: &str, name: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query("SELECT * FROM schedules WHERE tenant_id = ?1 AND name = ?2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list_schedules(&self, tenant_id: &str) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT * FROM schedules WHERE tenant_id = ?1 ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn update_schedule(&self, s: &Schedule) -> Result<Option<Schedule>> {
        let (mut conn, now) = self.write().await?;
        let query = sqlx::query(
            "UPDATE schedules SET cron = ?3, timezone = ?4, kind = ?5, payload = ?6, queue = ?7, \
                    priority = ?8, max_attempts = ?9, misfire = ?10, catch_up_max = ?11, paused = ?12, \
                    source = ?13, fired_through = ?14, next_fire_at = ?15, updated_at = ?17, \
                    version = version + 1 \
             WHERE tenant_id = ?1 AND name = ?2 AND version = ?16 RETURNING *",
        );
        let row = bind_schedule(query, s)
            .bind(s.version)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn delete_schedule(&self, tenant_id: &str, name: &str) -> Result<bool> {
        let (mut conn, _) = self.write().await?;
        let done = sqlx::query("DELETE FROM schedules WHERE tenant_id = ?1 AND name = ?2")
            .bind(tenant_id)
            .bind(name)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(
            "SELECT * FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= ?1 \
             ORDER BY next_fire_at LIMIT ?2",
        )
        .bind(micros(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn next_schedule_fire(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        next.map(from_micros).transpose()
    }

    async fn fire_schedule(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult> {
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

    async fn record_trigger(
        &self,
        tenant_id: &str,
        name: &str,
        job_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (mut conn, _) = self.write().await?;
        sqlx::query(
            "UPDATE schedules SET last_fire_at = ?3, last_job_id = ?4 WHERE tenant_id = ?1 AND name = ?2",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(micros(at))
        .bind(job_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
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

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
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

    async fn current_lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query("SELECT * FROM leases WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn prune_finished(
        &self,
        state: JobState,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        let (mut conn, _) = self.write().await?;
        let mut tx = conn.begin().await?;
        let gone: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "DELETE FROM job_history WHERE id IN ( \
                 SELECT id FROM job_history WHERE state = ?1 AND finished_at < ?2 \
                 ORDER BY finished_at LIMIT ?3) RETURNING id, tenant_id, idempotency_key",
        )
        .bind(state.as_str())
        .bind(micros(finished_before))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        // The keys of pruned jobs go with them, so that a key can be used again afterwards.
        let keys: Vec<serde_json::Value> = gone
            .iter()
            .filter_map(|(id, tenant, key)| Some(serde_json::json!([tenant, key.as_deref()?, id])))
            .collect();
        if !keys.is_empty() {
            sqlx::query(
                "DELETE FROM job_keys WHERE (tenant_id, key, job_id) IN \
                 (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1))",
            )
            .bind(serde_json::Value::from(keys).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(gone.len() as u64)
    }
}
