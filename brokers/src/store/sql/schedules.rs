//! [`SchedulerStore`] once for both backends; what differs is [`ScheduleDialect`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::{ScheduleEvent, SCHEDULE_CREATED, SCHEDULE_DELETED, SCHEDULE_UPDATED};
use pysaas_jobs::{JobState, Schedule};
use uuid::Uuid;

use super::events::record_event;
use super::rows::{lease_from_row, schedule_from_row};
use super::{args, Arg, Columns, ScheduleDialect, SqlTx, Stmt};
use crate::store::{FireResult, Lease, ScheduleFire, SchedulerStore};
use crate::Result;

const CREATE: Stmt<'static> = Stmt::write(
    "INSERT INTO schedules (tenant_id, name, cron, timezone, kind, payload, queue, priority, \
                            max_attempts, misfire, catch_up_max, paused, source, fired_through, \
                            next_fire_at, created_at, updated_at, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, 1) \
     ON CONFLICT (tenant_id, name) DO NOTHING",
);
const GET: Stmt<'static> = Stmt::read("SELECT * FROM schedules WHERE tenant_id = $1 AND name = $2");
const LIST: Stmt<'static> =
    Stmt::read("SELECT * FROM schedules WHERE tenant_id = $1 ORDER BY name");
const UPDATE: Stmt<'static> = Stmt::write(
    "UPDATE schedules SET cron = $3, timezone = $4, kind = $5, payload = $6, queue = $7, \
            priority = $8, max_attempts = $9, misfire = $10, catch_up_max = $11, paused = $12, \
            source = $13, fired_through = $14, next_fire_at = $15, updated_at = $16, \
            version = version + 1 \
     WHERE tenant_id = $1 AND name = $2 AND version = $17 RETURNING *",
);
const DELETE: Stmt<'static> =
    Stmt::write("DELETE FROM schedules WHERE tenant_id = $1 AND name = $2");
const DUE: Stmt<'static> = Stmt::read(
    "SELECT * FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1 \
     ORDER BY next_fire_at LIMIT $2",
);
const NEXT_FIRE: Stmt<'static> = Stmt::read(
    "SELECT min(next_fire_at) AS soonest FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
);
const RECORD_TRIGGER: Stmt<'static> = Stmt::write(
    "UPDATE schedules SET last_fire_at = $3, last_job_id = $4 WHERE tenant_id = $1 AND name = $2",
);
const CURRENT_LEASE: Stmt<'static> = Stmt::read("SELECT * FROM leases WHERE name = $1");

/// A schedule's columns as `$1 ..= $15` (tenant, name, definition, paused, source,
/// fired_through, next_fire_at), then `$16`: now.
fn schedule_args(s: &Schedule) -> Vec<Arg<'_>> {
    let catch_up_max = i32::try_from(s.spec.catch_up_max).unwrap_or(i32::MAX);
    args![
        &s.tenant_id,
        &s.spec.name,
        &s.spec.cron,
        &s.spec.timezone,
        &s.spec.kind,
        &s.spec.payload,
        s.spec.queue.as_deref(),
        s.spec.priority,
        s.spec.max_attempts,
        s.spec.misfire.as_str(),
        catch_up_max,
        s.spec.paused,
        s.source.as_str(),
        s.fired_through,
        s.next_fire_at,
        Arg::Now,
    ]
    .to_vec()
}

/// Records `event_type` about `s` as it now is, in `tx`.
async fn record_schedule<T: SqlTx>(tx: &mut T, s: &Schedule, event_type: &str) -> Result<()> {
    let event = ScheduleEvent {
        name: s.spec.name.clone(),
        kind: Some(s.spec.kind.clone()),
        cron: Some(s.spec.cron.clone()),
        timezone: Some(s.spec.timezone.clone()),
        paused: Some(s.spec.paused),
        source: Some(s.source.as_str().to_owned()),
    };
    let subject = format!("schedules/{}", s.spec.name);
    record_event(tx, &s.tenant_id, event_type, &subject, &event).await
}

#[async_trait]
impl<S: ScheduleDialect> SchedulerStore for S {
    async fn create_schedule(&self, s: &Schedule) -> Result<bool> {
        let mut tx = self.begin_tx().await?;
        if tx.execute(CREATE, &schedule_args(s)).await? != 1 {
            return Ok(false);
        }
        record_schedule(&mut tx, s, SCHEDULE_CREATED).await?;
        tx.commit_tx().await?;
        Ok(true)
    }

    async fn get_schedule(&self, tenant_id: &str, name: &str) -> Result<Option<Schedule>> {
        let row = self.fetch_optional(GET, &args![tenant_id, name]).await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list_schedules(&self, tenant_id: &str) -> Result<Vec<Schedule>> {
        let rows = self.fetch_all(LIST, &args![tenant_id]).await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn update_schedule(&self, s: &Schedule) -> Result<Option<Schedule>> {
        let mut args = schedule_args(s);
        args.push(Arg::from(s.version));
        let mut tx = self.begin_tx().await?;
        let Some(row) = tx.fetch_optional(UPDATE, &args).await? else {
            return Ok(None);
        };
        let updated = schedule_from_row(&row)?;
        record_schedule(&mut tx, &updated, SCHEDULE_UPDATED).await?;
        tx.commit_tx().await?;
        Ok(Some(updated))
    }

    async fn delete_schedule(&self, tenant_id: &str, name: &str) -> Result<bool> {
        let mut tx = self.begin_tx().await?;
        if tx.execute(DELETE, &args![tenant_id, name]).await? != 1 {
            return Ok(false);
        }
        let event = ScheduleEvent {
            name: name.to_owned(),
            kind: None,
            cron: None,
            timezone: None,
            paused: None,
            source: None,
        };
        let subject = format!("schedules/{name}");
        record_event(&mut tx, tenant_id, SCHEDULE_DELETED, &subject, &event).await?;
        tx.commit_tx().await?;
        Ok(true)
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Schedule>> {
        let rows = self.fetch_all(DUE, &args![now, limit]).await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn next_schedule_fire(&self) -> Result<Option<DateTime<Utc>>> {
        let row = self.fetch_optional(NEXT_FIRE, &[]).await?;
        Ok(row
            .map(|row| row.opt_time("soonest"))
            .transpose()?
            .flatten())
    }

    async fn fire_schedule(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult> {
        self.fire(lease, fire).await
    }

    async fn record_trigger(
        &self,
        tenant: &str,
        name: &str,
        job: Uuid,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.execute(RECORD_TRIGGER, &args![tenant, name, at, job])
            .await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        self.acquire(name, holder, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.give_up(lease).await
    }

    async fn current_lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = self.fetch_optional(CURRENT_LEASE, &args![name]).await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn prune_finished(
        &self,
        state: JobState,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        self.prune(state, before, limit).await
    }
}
