//! Rows into values, once for both backends (through [`Columns`]).

use pysaas_jobs::{Job, Schedule, ScheduleSpec};

use super::Columns;
use crate::store::auth::{ApiKeyRow, MembershipRow, RefreshRow, TenantRow, UserRow};
use crate::store::{
    attempt_errors, fold_queue_stats, parse_state, split_scopes, Lease, QueueStats,
};
use crate::{Result, StoreError};

/// A job from a row selecting `job_columns!()` (by position: the claim path reads thousands a
/// second).
pub(crate) fn job_from_row<R: Columns>(row: &R) -> Result<Job> {
    Ok(Job {
        id: row.uuid(0)?,
        tenant_id: row.text(1)?,
        kind: row.text(2)?,
        queue: row.text(3)?,
        state: parse_state(&row.text(4)?)?,
        priority: row.small(5)?,
        attempts: row.int(6)?,
        max_attempts: row.int(7)?,
        payload: row.json(8)?,
        result: row.opt_json(9)?,
        last_error: row.opt_text(10)?,
        timeout_ms: row.big(11)?,
        idempotency_key: row.opt_text(12)?,
        trace_context: row.opt_text(13)?,
        request_id: row.opt_text(14)?,
        worker_id: row.opt_text(15)?,
        created_at: row.time(16)?,
        run_at: row.time(17)?,
        started_at: row.opt_time(18)?,
        finished_at: row.opt_time(19)?,
        lease_expires_at: row.opt_time(20)?,
        errors: attempt_errors(row.opt_json(21)?)?,
    })
}

/// Jobs from rows selecting `job_columns!()`.
pub(crate) fn jobs_from_rows<R: Columns>(rows: &[R]) -> Result<Vec<Job>> {
    rows.iter().map(job_from_row).collect()
}

/// Per-queue stats from rows of `queue, state, n, oldest`, ordered by queue.
pub(crate) fn stats_from_rows<R: Columns>(rows: &[R]) -> Result<Vec<QueueStats>> {
    let rows = rows
        .iter()
        .map(|row| {
            let state = parse_state(&row.text("state")?)?;
            Ok((
                row.text("queue")?,
                state,
                row.big("n")?,
                row.opt_time("oldest")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(fold_queue_stats(rows))
}

/// A schedule from `SELECT *` of `schedules`.
pub(crate) fn schedule_from_row<R: Columns>(row: &R) -> Result<Schedule> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let catch_up_max = row.int("catch_up_max")?;
    Ok(Schedule {
        tenant_id: row.text("tenant_id")?,
        spec: ScheduleSpec {
            name: row.text("name")?,
            cron: row.text("cron")?,
            timezone: row.text("timezone")?,
            kind: row.text("kind")?,
            payload: row.json("payload")?,
            queue: row.opt_text("queue")?,
            priority: row.opt_small("priority")?,
            max_attempts: row.opt_int("max_attempts")?,
            misfire: row.text("misfire")?.parse().map_err(corrupt)?,
            catch_up_max: u32::try_from(catch_up_max)
                .map_err(|e| StoreError::Corrupt(format!("catch_up_max {catch_up_max}: {e}")))?,
            paused: row.flag("paused")?,
        },
        source: row.text("source")?.parse().map_err(corrupt)?,
        fired_through: row.time("fired_through")?,
        next_fire_at: row.opt_time("next_fire_at")?,
        last_fire_at: row.opt_time("last_fire_at")?,
        last_job_id: row.opt_uuid("last_job_id")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        version: row.big("version")?,
    })
}

/// A lease from `SELECT *` of `leases`.
pub(crate) fn lease_from_row<R: Columns>(row: &R) -> Result<Lease> {
    Ok(Lease {
        name: row.text("name")?,
        holder: row.text("holder")?,
        token: row.big("token")?,
        acquired_at: row.time("acquired_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(super) fn tenant<R: Columns>(row: &R) -> Result<TenantRow> {
    Ok(TenantRow {
        id: row.text("id")?,
        name: row.text("name")?,
        plan: row.text("plan")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn user<R: Columns>(row: &R) -> Result<UserRow> {
    Ok(UserRow {
        id: row.uuid("id")?,
        email: row.text("email")?,
        password_hash: row.text("password_hash")?,
        failed_logins: row.int("failed_logins")?,
        locked_until: row.opt_time("locked_until")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn membership<R: Columns>(row: &R) -> Result<MembershipRow> {
    Ok(MembershipRow {
        tenant_id: row.text("tenant_id")?,
        user_id: row.uuid("user_id")?,
        email: row.text("email")?,
        role: row.text("role")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn api_key<R: Columns>(row: &R) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        prefix: row.text("prefix")?,
        secret_hash: row.bytes("secret_hash")?,
        name: row.text("name")?,
        scopes: split_scopes(&row.text("scopes")?),
        created_by: row.opt_uuid("created_by")?,
        created_at: row.time("created_at")?,
        last_used_at: row.opt_time("last_used_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}

pub(super) fn refresh<R: Columns>(row: &R) -> Result<RefreshRow> {
    Ok(RefreshRow {
        id: row.uuid("id")?,
        family_id: row.uuid("family_id")?,
        user_id: row.uuid("user_id")?,
        tenant_id: row.text("tenant_id")?,
        token_hash: row.bytes("token_hash")?,
        expires_at: row.time("expires_at")?,
        used_at: row.opt_time("used_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}
